"""The Pulumi program: load settings, build, export (infra/program.py)."""

from infra.program import main

main()
