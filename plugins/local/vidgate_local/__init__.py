"""vidgate-local: a vendor that renders real H.264 MP4 files on this machine.

It needs no account and no network: each task becomes a render in a worker process (see
:mod:`vidgate_local.render`), which draws the prompt onto an animated background, or
animates the reference image, and reports real progress through files in
``<workdir>/jobs``. Because the job's state lives in those files, a gateway killed in the
middle of a render finds the job again after a restart and finishes it.

Derived tasks: ``remix`` renders the source's look (background, reference image, fps)
again with the new prompt; ``extend`` continues the source (the new clip starts from the
source's last frame and slowly zooms into it, with the new prompt as caption); ``edit``
re-renders the source's frames with the new prompt drawn in. Every task also has a
``last_frame`` artifact (PNG).

Metadata keys: ``background`` (``#rrggbb`` colour behind the text) and ``fps`` (1-60,
default 24). Other keys are ignored.
"""

from __future__ import annotations

from .plugin import Local

__all__ = ["Local", "plugin"]

plugin = Local()
