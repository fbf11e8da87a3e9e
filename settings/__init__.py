"""Every setting a user gives spanqa, declared once: one frozen dataclass per component, each field
with its default, a one-line doc, its command-line flag and its check (spanqa.settings.components).

The command line's options (`add_options`, `from_args`), `DocumentQA`'s keywords
(`QASettings.from_keywords`), the service's configuration and the reference page
(docs/reference/settings.md) are all derived from these declarations: adding a setting is one
`setting(...)` in components.py plus its use. A value that fails its check is a ConfigError naming
the setting, the value and what it takes, wherever it came from.

Plain Python, no third-party imports: the lowest layer, beside errors and records.
"""

from spanqa.settings.checks import (
    AUTO_THRESHOLD,
    DEVICE_PATTERN,
    device,
    flag,
    non_negative_int,
    non_negative_number,
    one_of,
    optional,
    positive_int,
    positive_number,
    share,
    text,
    threshold,
)
from spanqa.settings.components import (
    ALL_COMPONENTS,
    CHUNK_MODES,
    EMBEDDER_MODEL,
    INDEX_TYPES,
    OCR_MODES,
    PRECISIONS,
    READER_MODEL,
    RERANKER_MODEL,
    RETRIEVAL_MODES,
    ChunkingSettings,
    ConnectionSettings,
    DeviceSettings,
    EmbedderSettings,
    OcrSettings,
    ParseSettings,
    QASettings,
    ReaderSettings,
    RerankSettings,
    RetrievalSettings,
    ServiceSettings,
    StoreSettings,
)
from spanqa.settings.declaring import (
    SettingInfo,
    Settings,
    owners,
    route_keywords,
    setting,
)
from spanqa.settings.training import TrainSettings
from spanqa.settings.options import (
    add_options,
    argument_type,
    from_args,
    option_spec,
    shown_default,
    with_default,
)

__all__ = [
    "ALL_COMPONENTS", "AUTO_THRESHOLD", "CHUNK_MODES", "DEVICE_PATTERN", "EMBEDDER_MODEL", "INDEX_TYPES",
    "OCR_MODES", "PRECISIONS", "READER_MODEL", "RERANKER_MODEL", "RETRIEVAL_MODES", "ChunkingSettings", "ConnectionSettings",
    "DeviceSettings", "EmbedderSettings", "OcrSettings", "ParseSettings", "QASettings", "ReaderSettings",
    "RerankSettings", "RetrievalSettings", "ServiceSettings", "SettingInfo", "Settings", "StoreSettings", "TrainSettings", "add_options",
    "argument_type", "device", "flag", "from_args", "non_negative_int", "non_negative_number", "one_of",
    "option_spec", "optional", "owners", "positive_int", "positive_number", "route_keywords", "setting", "share",
    "shown_default", "text", "threshold", "with_default",
]
