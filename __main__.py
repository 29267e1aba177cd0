"""The Pulumi program: load settings, build, export."""

import pulumi

from infra.settings import Settings
from infra.stack import build

for name, value in build(Settings.load()).items():
    pulumi.export(name, value)
