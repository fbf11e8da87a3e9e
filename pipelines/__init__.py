"""Index, query and search pipelines; the DocumentQA API and the `spanqa` CLI built on them."""


def __getattr__(name: str):
    # The CLI lives in this package; `spanqa --help` should not wait for torch and Haystack to import.
    if name == "DocumentQA":
        from spanqa.pipelines.api import DocumentQA

        return DocumentQA
    raise AttributeError(f"module 'spanqa.pipelines' has no attribute {name!r}")


__all__ = ["DocumentQA"]
