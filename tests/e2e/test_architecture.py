"""ARCHITECTURE.md's dependency list is exactly what the crates' Cargo.toml files say."""

import os
import re
import tomllib

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_architecture_arrows_match_cargo_toml():
    with open(os.path.join(ROOT, "ARCHITECTURE.md")) as f:
        block = re.search(r"```deps\n(.*?)```", f.read(), re.S).group(1)
    documented = {}
    for line in block.splitlines():
        crate, deps = (part.strip() for part in line.split("->"))
        documented[crate] = {d.strip() for d in deps.split(",") if d.strip()}
    actual = {}
    for crate in os.listdir(os.path.join(ROOT, "crates")):
        path = os.path.join(ROOT, "crates", crate, "Cargo.toml")
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            manifest = tomllib.load(f)
        actual[manifest["package"]["name"]] = {d for d in manifest.get("dependencies", {}) if d.startswith("weir")}
    assert documented == actual
