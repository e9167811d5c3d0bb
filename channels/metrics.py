"""The metric names messaging writes as profile events, so segments, flow exits and conditions
(engagement, SMS keywords) can use them like any other event. One place, used by all writers."""

from __future__ import annotations

from models import Channel

# (channel, what happened) -> metric name
RECEIVED = {
    Channel.email: "Received Email",
    Channel.sms: "Received SMS",
    Channel.whatsapp: "Received WhatsApp",
    Channel.push: "Received Push",
}
OPENED = {Channel.email: "Opened Email", Channel.push: "Opened Push"}
CLICKED = {
    Channel.email: "Clicked Email",
    Channel.sms: "Clicked SMS",
    Channel.whatsapp: "Clicked WhatsApp",
    Channel.push: "Clicked Push",
}
BOUNCED = {Channel.email: "Bounced Email", Channel.sms: "Failed to Deliver SMS"}
MARKED_SPAM = "Marked Email as Spam"
UNSUBSCRIBED = {
    Channel.email: "Unsubscribed from Email",
    Channel.sms: "Unsubscribed from SMS",
    Channel.whatsapp: "Unsubscribed from WhatsApp",
    Channel.push: "Unsubscribed from Push",
}
# An inbound message from the customer; properties: {"keyword": "JOIN", "body": "join please"}
REPLIED = {Channel.sms: "Replied to SMS", Channel.whatsapp: "Replied to WhatsApp"}
