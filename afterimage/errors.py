"""One exception tree for afterimage; HTTP status codes are chosen only at the receiver's edge.

    AfterimageError
    ├── ConfigError              bad or missing configuration
    ├── AdapterError             a provider payload we cannot read (names provider and field)
    │   └── NotJsonError             the body is not JSON at all
    ├── CallbackAuthError        bad callback token or signature
    ├── UnknownProviderError     no such provider
    ├── InvalidRequestError      a task operation's input is wrong (task id, state, limit, …)
    ├── TaskNotFoundError        no such task
    ├── NotReplayableError       the task cannot be replayed (its generation failed)
    ├── LedgerUnavailableError   Redis cannot be reached
    │   └── ReplicasBehindError  too few replicas confirmed a write (MIN_REPLICAS)
    ├── ProviderApiError         a provider API call failed
    │   ├── TransientProviderError   429, 5xx, maintenance: retry with backoff
    │   ├── PermanentProviderError   auth, credits, validation: report, do not retry
    │   │   └── ProviderRefusedInputError  400/422: the provider refuses what we forwarded
    │   └── TaskGoneError            the provider no longer knows the task
    ├── DownloadError            fetching an image failed
    │   ├── UnsafeUrlError           the URL points somewhere we must not go
    │   ├── LinkExpiredError         403/404/410 from the image host
    │   ├── TransientDownloadError   truncated body, timeout, 5xx: retry
    │   └── ImageRejectedError       not PNG/JPEG/WebP, too large, too many pixels
    ├── StorageError             the archive store failed (transient)
    └── NotifyError              a completion event was not accepted (retried with backoff)
"""

from __future__ import annotations


class AfterimageError(Exception):
    """Base of every error afterimage raises on purpose."""

    code = "afterimage_error"


class ConfigError(AfterimageError):
    code = "config_error"


class AdapterError(AfterimageError):
    """A provider payload that the adapter cannot read."""

    code = "unreadable_payload"

    def __init__(self, provider: str, field: str, problem: str) -> None:
        self.provider = provider
        self.field = field
        self.problem = problem
        super().__init__(f"{provider}: field {field!r}: {problem}")


class NotJsonError(AdapterError):
    code = "not_json"


class CallbackAuthError(AfterimageError):
    code = "unauthorized"


class UnknownProviderError(AfterimageError):
    code = "unknown_provider"


class InvalidRequestError(AfterimageError):
    """What a client or operator asked of a task operation cannot be done as asked."""

    code = "invalid_request"


class TaskNotFoundError(AfterimageError):
    code = "task_not_found"


class NotReplayableError(AfterimageError):
    code = "not_replayable"


class LedgerUnavailableError(AfterimageError):
    code = "redis_unavailable"
    transient = True  # an archive job that meets it is retried, not failed


class ReplicasBehindError(LedgerUnavailableError):
    """Fewer replicas than AFTERIMAGE_REDIS_MIN_REPLICAS confirmed a write in time."""

    code = "redis_replicas_behind"


class ProviderApiError(AfterimageError):
    """A provider API call failed; `status` is the HTTP status, `provider_code` its own code."""

    code = "provider_error"
    transient = False

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        provider_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.provider_code = provider_code
        self.retry_after = retry_after
        self.message = message
        super().__init__(f"{provider}: {message}")


class TransientProviderError(ProviderApiError):
    code = "provider_unavailable"
    transient = True


class PermanentProviderError(ProviderApiError):
    code = "provider_rejected"


class ProviderRefusedInputError(PermanentProviderError):
    """The provider refuses the request itself (400, 422: a field it does not accept); on a
    submit through afterimage, that is the caller's own create request."""

    code = "provider_refused_request"


class TaskGoneError(ProviderApiError):
    code = "task_gone"


class DownloadError(AfterimageError):
    code = "download_failed"
    transient = False


class UnsafeUrlError(DownloadError):
    code = "unsafe_url"


class LinkExpiredError(DownloadError):
    code = "link_expired"


class TransientDownloadError(DownloadError):
    code = "download_interrupted"
    transient = True


class ImageRejectedError(DownloadError):
    code = "image_rejected"


class StorageError(AfterimageError):
    code = "storage_error"
    transient = True


class NotifyError(AfterimageError):
    code = "notify_failed"
    transient = True
