"""Waymark's custom search attributes: typed keys, one place.

Registered by `waymark dev` on the embedded server and, in production, once per namespace with
`temporal operator search-attribute create` (see docs/ARCHITECTURE.md and docker-compose.yml).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

WORKSPACE_ID = SearchAttributeKey.for_keyword("WaymarkWorkspaceId")
FLOW_ID = SearchAttributeKey.for_keyword("WaymarkFlowId")
FLOW_VERSION = SearchAttributeKey.for_int("WaymarkFlowVersion")
PROFILE_ID = SearchAttributeKey.for_keyword("WaymarkProfileId")
STEP = SearchAttributeKey.for_keyword("WaymarkStep")
STATUS = SearchAttributeKey.for_keyword("WaymarkStatus")
CAMPAIGN_ID = SearchAttributeKey.for_keyword("WaymarkCampaignId")

ALL: tuple[SearchAttributeKey, ...] = (
    WORKSPACE_ID,
    FLOW_ID,
    FLOW_VERSION,
    PROFILE_ID,
    STEP,
    STATUS,
    CAMPAIGN_ID,
)


def cli_type(key: SearchAttributeKey) -> str:
    """The type name the `temporal` CLI takes for a key (Keyword, Int, ...)."""
    return {
        "KEYWORD": "Keyword",
        "INT": "Int",
        "TEXT": "Text",
        "DOUBLE": "Double",
        "BOOL": "Bool",
        "DATETIME": "Datetime",
        "KEYWORD_LIST": "KeywordList",
    }[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
