"""The policy engine: what a tenant's policy decides about a request, as a pure function (`evaluate`)."""
