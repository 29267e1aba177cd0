"""The rolling policy pack: rules in rules.py, wired to Pulumi CrossGuard in __main__.py."""
