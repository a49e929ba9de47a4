"""The API's endpoints, one group per module; each route parses and checks, then calls a service."""
