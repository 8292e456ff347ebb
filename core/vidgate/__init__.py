"""vidgate: one asynchronous video-generation API in front of many vendors.

The names exported here are the public API for plugin authors; see ``docs/plugins.md``.
"""

from .errors import (
    ChannelUnusable,
    ModelRetired,
    Problem,
    RequestInvalid,
    TaskFailed,
    TaskNotFound,
    VendorError,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
    request_maybe_received,
)
from .markers import hookimpl, hookspec
from .request import Image, Reference, Size, VideoRequest, image_dimensions
from .vendor import (
    ARTIFACTS,
    DERIVE_OPERATIONS,
    CallbackResult,
    CallContext,
    CancelOutcome,
    CancelResult,
    Channel,
    MediaSource,
    Model,
    PollResult,
    SourceTask,
    Submission,
    TaskError,
    Vendor,
    VendorJob,
    VendorPlugin,
    verify_standard_webhook,
)

__version__ = "0.1.0"

__all__ = [
    "ARTIFACTS",
    "DERIVE_OPERATIONS",
    "CallbackResult",
    "CallContext",
    "CancelOutcome",
    "CancelResult",
    "Channel",
    "ChannelUnusable",
    "Image",
    "MediaSource",
    "Model",
    "ModelRetired",
    "PollResult",
    "Problem",
    "Reference",
    "RequestInvalid",
    "Size",
    "SourceTask",
    "Submission",
    "TaskError",
    "TaskFailed",
    "TaskNotFound",
    "Vendor",
    "VendorError",
    "VendorJob",
    "VendorPlugin",
    "VendorRateLimited",
    "VendorRejected",
    "VendorUnavailable",
    "VideoRequest",
    "hookimpl",
    "hookspec",
    "image_dimensions",
    "request_maybe_received",
    "verify_standard_webhook",
]
