"""The pluggy markers for the ``vidgate`` project (re-exported as ``vidgate.hookimpl``)."""

import pluggy

PROJECT = "vidgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
