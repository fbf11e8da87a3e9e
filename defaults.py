"""The internal constants of spanqa: tuning values that are not user settings (each with the
measurement or limit it comes from). Every setting a user gives, with its default, is declared once
in `spanqa.settings`; nothing here repeats one.
"""

# Reader. The padded forward on a CPU: one more pass costs about 48 padded tokens' worth of compute
# (measured with the MiniLM-L6 reader on 10 retrieved SQuAD passages per question: 7.8 ms a pass,
# 0.16 ms a token); batches are cut where padding would cost more (bench/README.md, "Reader").
READER_CPU_FORWARD_COST_TOKENS = 48
ADAPTIVE_ROUND_DOCUMENTS = 2  # passages read per round by adaptive reading (docs/measurements/answer-quality.md)
CALIBRATION_TARGET_COVERAGE = 0.9  # `spanqa calibrate`: threshold "auto" keeps this share of answerable questions answered

# Embedding. The fast (int8 ONNX Runtime) embedder batches texts of similar length by tokens, not by count.
EMBEDDER_BATCH_TOKENS = 2048  # tokens per forward pass, padding included (1024-8192 measured: smaller was faster)
EMBEDDER_MAX_BATCH = 128  # texts per forward pass
EMBEDDER_MAX_SEQ_LENGTH = 256  # word pieces, for a model directory that does not say

# Ingestion (issue #4): the files indexed, and how parse work is gathered for the embedder. Without the
# reader's tokenizer (a hub id offline), chunk tokens are estimated from words (see ingest/parsing.py).
SUPPORTED_SUFFIXES = (
    ".pdf", ".txt", ".md", ".markdown", ".html", ".htm",
    ".docx", ".docm", ".dotx", ".pptx", ".pptm", ".xlsx", ".xlsm",
    ".doc", ".rtf", ".odt", ".xls", ".xlsb", ".ods", ".ppt", ".odp",
)
PARSE_OCR_PAGE_S = 60.0  # more seconds a file may take for each page it OCRs
EMBED_BATCH_CHUNKS = 256  # chunks gathered (from one or more files) before an embedding call

# Indexing on Ray (issue 15, `spanqa index --ray`): files parse in Ray tasks (one CPU each), parsed
# files are embedded by an autoscaling pool of actors, one per GPU where the cluster has GPUs.
# Parsed files per embedder call on the cluster; each batch is one commit. An actor waits for a whole
# batch, so large ones stall embedding behind slow files: the 27 shared PDFs (4 OCR'd) indexed in
# 51 s with 4, 54 s with 1, 70 s with 16 (float32, one 2-core machine as a 4-CPU Ray node).
RAY_EMBED_BATCH_FILES = 4
RAY_EMBED_ACTOR_CPUS = 2  # CPUs (and threads) of one embedder actor on a cluster without GPUs
RAY_EMBED_CPU_SHARE = 0.5  # share of the cluster's CPUs the embedder actors may take; the rest parse
# Embedder actors that may die while loading, one after another, before the run stops (a node lost
# while its actor loads is replaced; an embedder that cannot load fails the run after these).
RAY_ACTOR_INIT_DEATHS = 3
# Times a shard writer's process that dies is started again on its node; the commit it was making
# is made again (a commit replaces its files' chunks: made twice, the same).
RAY_WRITER_RESTARTS = 3
# Serving on Ray (`spanqa serve --ray`): the FastAPI ingress (one replica) retrieves, reader replicas read.
RAY_READER_CPUS = 2  # CPUs (and threads) of one CPU reader replica at most; fewer when the cluster is small
# Requests Ray Serve lets into the ingress at once: the service queues and sheds load itself
# (ServiceSettings.queue_size, 503), and page images, uploads and /healthz must not wait behind questions.
RAY_INGRESS_MAX_ONGOING = 1000

# Index store (issue #5). Vectors in FAISS (cosine = inner product of unit vectors), chunk text,
# metadata and the file list in SQLite (WAL). Index types (StoreSettings.index_type): "flat" (exact), "hnsw", "ivf", or "auto":
# flat below AUTO_APPROXIMATE_MIN_VECTORS vectors, IVF from there on. bench/store.py at 1M vectors
# (bench/README.md, "Store"): IVF opens in 0.1 s (memory-mapped) and builds in ~3 min on 2 cores;
# HNSW takes ~12 min to build and ~4.5 s to open (its graph is read into memory), for a recall that
# depends on the data as IVF's does.
AUTO_APPROXIMATE_MIN_VECTORS = 50_000
HNSW_M = 32  # graph neighbours per vector
HNSW_EF_CONSTRUCTION = 40  # candidate list while building the graph (FAISS's default)
HNSW_EF_SEARCH = 64  # candidate list per query (raised to top_k when that is larger)
IVF_MAX_LISTS = 2048  # inverted lists: about 4·sqrt(vectors), at most this many
IVF_TRAIN_POINTS_PER_LIST = 64  # k-means sample size per list (FAISS wants at least 39)
IVF_TRAIN_ITERATIONS = 10  # k-means iterations
IVF_NPROBE = 16  # inverted lists scanned per query
FILTER_EXACT_MAX = 20_000  # a filter matching at most this many chunks ranks them exactly
# Size of a metadata filter (issue 24): bad or larger filters are a ConfigError (HTTP 422). They keep
# its SQL within SQLite's limits (expression depth 1000, its parser stack, 32766 bound variables:
# a value takes at most 3) and Python's recursion. An OR of `==` on one field counts as one `in`.
FILTER_MAX_DEPTH = 32  # levels of AND/OR/NOT nesting
FILTER_MAX_CONDITIONS = 1000  # comparisons and AND/OR/NOT nodes in all
FILTER_MAX_VALUES = 10_000  # values in all (each item of an `in`, `contains` or `under` list)
SQLITE_BUSY_TIMEOUT_S = 60.0  # how long a second writer waits for the one writing
# Vectors live in append-only segments (issue #14): a commit writes its new vectors as one segment.
APPROXIMATE_MIN_VECTORS = 10_000  # an "ivf"/"hnsw" index keeps segments smaller than this exact (flat)
# Segments of one size tier (sizes within a factor of SEGMENT_MERGE_FACTOR, all those below the floor
# in one tier) are merged once there are SEGMENT_MERGE_FACTOR of them: each vector is rewritten about
# log_8(n / floor) times in all, and a search visits a few segments per tier.
SEGMENT_MERGE_FACTOR = 8
SEGMENT_MERGE_FLOOR_VECTORS = 1_000
SEGMENT_MAX_DELETED_SHARE = 0.3  # a segment with this share of its vectors deleted is rewritten without them

# Service (issue #11): `spanqa serve`, one process serving the HTTP API and the web page.
SERVICE_MAX_QUESTION_CHARS = 2000
SERVICE_MAX_TOP_K = 50  # most answers, passages read, or passages listed per request
SERVICE_MAX_BODY_BYTES = 1024 * 1024  # JSON bodies
SERVICE_RETRY_AFTER_S = 1  # what a 503 (queue full) or 429 (rate limit) tells clients to wait, at least
SERVICE_JOBS_KEPT = 500  # finished upload jobs remembered for GET /v1/jobs/{job}
SERVICE_PAGE_WIDTH = 1000  # pixels of a page image unless the request asks for another width
SERVICE_MAX_PAGE_WIDTH = 3000
# Connections (issue 24, spanqa.service.connections): slow or half-sent requests are closed, and a
# flood of them cannot take the file descriptors that files, SQLite and page work need.
SERVICE_FD_RESERVE = 256  # descriptors kept for uploads, SQLite, the index and page work
# Connections the kernel queues for accept(): they take descriptors before the server sees them, so
# the derived connection cap leaves room for two queues' worth.
SERVICE_LISTEN_BACKLOG = 128
# Page work runs in worker processes under a budget (ServiceSettings.page_timeout_s, page_memory_mb).
SERVICE_PAGE_WORKER_START_S = 120.0  # a page worker not ready by then (imports, forkserver) is given up on
# What the server keeps of finished page work: results up to this many MiB (page images count their
# bytes), and the page versions that went over budget (so a hostile page costs its budget once).
SERVICE_PAGE_CACHE_MB = 64
SERVICE_PAGE_CACHE_ENTRIES = 4096
SERVICE_PAGE_FAILURES_KEPT = 1024

# Highlight boxes and page images (issue #11): pdfium (pypdfium2) finds where an answer's characters
# are drawn (spanqa.indexing.pages.highlight) and draws page images (spanqa.indexing.pages.pdf_pages, which keeps
# the last PDFs open and the last pages' glyph positions, so a second answer on a page costs little).
PDF_OPEN_DOCUMENTS = 8  # PDFs kept open by pdfium (each holds its parsed objects and fonts)
HIGHLIGHT_CACHED_PAGES = 128  # pages whose text, glyph boxes and alignment are kept (~0.3 MB each)
PAGE_IMAGE_MAX_WIDTH = 3000  # pixels; wider requests are drawn this wide (the service allows up to SERVICE_MAX_PAGE_WIDTH)
PAGE_IMAGE_MAX_PIXELS = 16_000_000  # a very tall page is drawn narrower than asked, to stay below this many pixels
