"""Guardrail validators of our own, pure: personal data, credentials, banned terms, prompt injection, length and
JSON validity (`checks` runs a policy's rules over a stage; `activities.guardrails_ai` runs the same through
guardrails-ai)."""
