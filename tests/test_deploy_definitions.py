import importlib.util
from pathlib import Path

DEFINITIONS = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq"


def test_definitions_json_matches_the_topology_module() -> None:
    spec = importlib.util.spec_from_file_location("generate_definitions", DEFINITIONS / "generate_definitions.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (DEFINITIONS / "definitions.json").read_text() == module.render(), (
        "deploy/rabbitmq/definitions.json is stale: run python deploy/rabbitmq/generate_definitions.py"
    )
