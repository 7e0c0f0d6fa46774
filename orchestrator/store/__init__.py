"""Redis: the GlobalTaskRegistry (hashes, indexes, Lua scripts), its keys and codec, the service directory."""
