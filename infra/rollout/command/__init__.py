"""The `rollout` command, one module a verb: ``request`` (what is asked, parsed), ``session`` (what a run
reads the stack through), ``outcome`` (how it ends), ``judging`` and ``steps`` (shared by every changing
verb), then ``ship``, ``canary``, ``promote``, ``undo``, ``abort`` and ``listing``, and ``run`` (main)."""
