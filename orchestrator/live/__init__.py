"""The live side: the update bus shared by replicas over Redis pub/sub, the WebSocket hub and endpoint."""
