"""The thin HTTP API: authenticates, starts job workflows and reads them back."""
