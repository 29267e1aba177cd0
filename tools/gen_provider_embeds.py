"""Write the two documents the Kubernetes provider binary embeds.

The provider module publishes ``schema.json`` and ``terraform-mapping.json``;
its binary embeds compact copies, the schema with its ``version`` field set to
the release being built. Usage: gen_provider_embeds.py SRC_DIR OUT_DIR VERSION
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def compact(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def main(src: Path, out: Path, version: str) -> None:
    schema = json.loads((src / "schema.json").read_text())
    schema["version"] = version.removeprefix("v")
    (out / "schema-embed.json").write_bytes(compact(schema))
    mapping = json.loads((src / "terraform-mapping.json").read_text())
    (out / "terraform-mapping-embed.json").write_bytes(compact(mapping))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: gen_provider_embeds.py SRC_DIR OUT_DIR VERSION")
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
