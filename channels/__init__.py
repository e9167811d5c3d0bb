"""Messaging: providers (SendGrid, Twilio, web push, local outbox), rendering, the send gate, the
message ledger, tracking links and provider webhooks. Journeys and campaigns send only here."""
