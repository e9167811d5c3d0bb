// The outbox page: fetches /v1/outbox with the key the developer typed (kept in sessionStorage
// for this tab only) and renders every value as text. Email HTML is shown in a sandboxed
// iframe without scripts, so message content cannot touch this page.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const list = $("messages");
  let cursor = null;
  $("key").value = sessionStorage.getItem("waymark.key") || "";

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text != null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function render(msg) {
    const box = el("article", null, "msg");
    box.append(el("div", `${msg.created_at} · ${msg.channel} · to ${msg.to} · ${msg.provider_message_id}`, "meta"));
    if (msg.subject) box.append(el("div", msg.subject, "subject"));
    if (msg.html) {
      const frame = document.createElement("iframe");
      frame.setAttribute("sandbox", "");
      frame.setAttribute("referrerpolicy", "no-referrer");
      frame.srcdoc = msg.html;
      box.append(frame);
    }
    if (msg.text) box.append(el("pre", msg.text));
    const details = el("details");
    details.append(el("summary", "details"), el("pre", JSON.stringify(msg.payload, null, 2)));
    box.append(details);
    return box;
  }

  async function load(more) {
    const key = $("key").value.trim();
    sessionStorage.setItem("waymark.key", key);
    const params = new URLSearchParams({ limit: "50" });
    if ($("channel").value) params.set("channel", $("channel").value);
    if ($("to").value.trim()) params.set("to", $("to").value.trim());
    if (more && cursor) params.set("cursor", cursor);
    if (!more) list.replaceChildren();
    $("status").textContent = "";
    const response = await fetch(`/v1/outbox?${params}`, { headers: { Authorization: `Bearer ${key}` } });
    const body = await response.json();
    if (!response.ok) {
      $("status").textContent = body.error ? body.error.message : response.statusText;
      return;
    }
    body.data.forEach((msg) => list.append(render(msg)));
    if (!body.data.length && !more) list.append(el("p", "Nothing sent yet."));
    cursor = body.next_cursor;
    $("more").hidden = !cursor;
  }

  $("load").addEventListener("click", () => load(false));
  $("more").addEventListener("click", () => load(true));
})();
