"""The HTTP API: the route table, route handlers, request parsing, error answers, schemas, OpenAPI, health."""
