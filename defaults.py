"""Every default setting of spanqa, in one place."""

# Models: a Hugging Face hub id or a local directory.
READER_MODEL = "distilbert/distilbert-base-cased-distilled-squad"
EMBEDDER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Where a model runs: "auto" picks CUDA when torch sees a GPU, else the CPU.
DEVICE = "auto"

# Query.
ANSWER_TOP_K = 5  # answers returned by `ask`
RETRIEVER_TOP_K = 10  # passages the reader reads per question
SEARCH_TOP_K = 5  # passages returned by `search`
# Retrieval (issue #6): "hybrid" fuses embedding and BM25 rankings; "dense" or "keyword" use one.
RETRIEVAL_MODE = "hybrid"
HYBRID_DENSE_WEIGHT = 0.4  # share of the dense side in the fused score (docs/measurements/retrieval.md: measured on SQuAD)
HYBRID_CANDIDATES = 50  # chunks each side ranks before fusing

# Reader decoding: the settings of the classic transformers question-answering pipeline.
MAX_ANSWER_LENGTH = 15  # tokens
MAX_SEQ_LENGTH = 384  # tokens per (question, passage window) pair
DOC_STRIDE = 128  # tokens shared by consecutive windows of one long passage
MAX_QUESTION_LENGTH = 64  # tokens; longer questions are cut so a passage always fits beside them
READER_BATCH_SIZE = None  # most windows per forward pass; None: as many as READER_MAX_BATCH_TOKENS allows
READER_MAX_BATCH_TOKENS = None  # tokens per forward pass (with padding); None: 8192 on CPU, sized from free memory on CUDA
# The padded forward on a CPU: one more pass costs about 48 padded tokens' worth of compute (measured
# with the MiniLM-L6 reader on 10 retrieved SQuAD passages per question: 7.8 ms a pass, 0.16 ms a
# token); batches are cut where padding would cost more (bench/README.md, "Reader").
READER_CPU_FORWARD_COST_TOKENS = 48
READER_FAST = False  # CPU fast mode: int8 ONNX Runtime (optional extra), close to but not identical with exact answers
# Answer ranking (issue #12): a span's ranking sum is its start + end logit minus
# READER_RANK_WEIGHT * ln(1 + its passage's retrieval rank). Chosen on SQuAD part-a articles 16-19
# with the trained MiniLM reader (docs/measurements/answer-quality.md): by the logits alone, EM fell from 37.6
# reading 1 passage to 24.8 reading 10; with the prior at 2 it was 39.9 (held out: 42.3 -> 25.5 by
# the logits alone, 40.3 with the prior).
READER_RANK_WEIGHT = 2.0
ADAPTIVE_ROUND_DOCUMENTS = 2  # passages read per round by adaptive reading (docs/measurements/answer-quality.md)
CALIBRATION_TARGET_COVERAGE = 0.9  # `spanqa calibrate`: threshold "auto" keeps this share of answerable questions answered
CONTEXT_CHARS = 150  # characters of context kept on each side of an answer
SCORE_THRESHOLD = None  # answers scoring below it are dropped ("no answer"); None keeps all
AUTO_THRESHOLD = "auto"  # the threshold value that defers to the index's answer calibration (`spanqa calibrate`)

# Indexing.
EMBEDDER_BATCH_SIZE = 32
# The fast (int8 ONNX Runtime) embedder batches texts of similar length by tokens, not by count.
EMBEDDER_BATCH_TOKENS = 2048  # tokens per forward pass, padding included (1024-8192 measured: smaller was faster)
EMBEDDER_MAX_BATCH = 128  # texts per forward pass
EMBEDDER_MAX_SEQ_LENGTH = 256  # word pieces, for a model directory that does not say
# Issue #4: a new index embeds in int8 on the CPU ("auto"; "float32" or "int8" to choose), and the
# embedder reads the first 96 word pieces of each chunk's core; BM25 reads every word. On SQuAD
# hybrid recall was the same from 256 word pieces down to 96 (R@5 0.959 / 0.957 / 0.957 / 0.959 at
# 256 / 128 / 112 / 96), dense-only recall fell (R@5 0.871 -> 0.838), and indexing ran ~1.27x faster
# than at 128 (docs/measurements/retrieval.md, "Embedding settings"). For dense-only retrieval, index with EMBED_MAX_TOKENS None.
EMBEDDER_PRECISION = "auto"
EMBED_MAX_TOKENS = 96  # word pieces of a chunk the embedder reads; None: as many as the model takes
SUPPORTED_SUFFIXES = (".pdf", ".txt", ".md", ".markdown", ".html", ".htm")

# Ingestion (issue #4). Chunks are sized in tokens of the reader's tokenizer, so that a question of
# up to MAX_QUESTION_LENGTH tokens plus a chunk fits one reader window (384 - 64 - 3 special = 317
# tokens), and so that the embedder (all-MiniLM-L6-v2 reads 256 word pieces) sees all of a chunk;
# the sizes were chosen by retrieval recall on SQuAD (docs/measurements/chunk-sizes.md).
CHUNK_TOKENS = 192  # reader tokens per chunk
CHUNK_OVERLAP_TOKENS = 48  # reader tokens of context on each side of a chunk's embedded core (whole sentences where they fit)
# Without the reader's tokenizer (a hub id offline), tokens are estimated from words (see parsing.py).
PARSE_WORKERS = None  # parser processes; None: the number of CPUs, at least 1, at most 4
PARSE_TIMEOUT_S = 120.0  # seconds one file may take to parse before its worker is stopped
PARSE_OCR_PAGE_S = 60.0  # more seconds a file may take for each page it OCRs
# Address space one parser process may use (RLIMIT_AS), in MiB. The OCR engine (ONNX Runtime) reserves
# much more address space than it touches: 2048 failed on dense 200-dpi pages (bench/ocr.py), 3072 did not.
PARSE_MEMORY_MB = 4096
MAX_FILE_MB = 512  # larger files are reported, not parsed
LAYOUT_READING_ORDER = True  # PDF pages read column by column (False: pypdf's content-stream order)
# PDF pages without a usable text layer are OCR'd: "auto" (the built-in engine, RapidOCR), "rapidocr",
# "tesseract" (when installed) or "off".
OCR = "auto"
CLEAN_TEXT = True  # join hyphenated words and wrapped lines, drop running headers/footers (PDF only)
EMBED_BATCH_CHUNKS = 256  # chunks gathered (from one or more files) before an embedding call
CHUNK_MODE = "context"  # "context": embedded cores widened by CHUNK_OVERLAP_TOKENS each side; "overlap": classic overlap

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
RAY_READER_REPLICAS = 1
RAY_READER_CPUS = 2  # CPUs (and threads) of one CPU reader replica at most; fewer when the cluster is small
# Requests Ray Serve lets into the ingress at once: the service queues and sheds load itself
# (SERVICE_QUEUE_SIZE, 503), and page images, uploads and /healthz must not wait behind questions.
RAY_INGRESS_MAX_ONGOING = 1000

# Index store (issue #5). Vectors in FAISS (cosine = inner product of unit vectors), chunk text,
# metadata and the file list in SQLite (WAL). Index types: "flat" (exact), "hnsw", "ivf", or "auto":
# flat below AUTO_APPROXIMATE_MIN_VECTORS vectors, IVF from there on. bench/store.py at 1M vectors
# (bench/README.md, "Store"): IVF opens in 0.1 s (memory-mapped) and builds in ~3 min on 2 cores;
# HNSW takes ~12 min to build and ~4.5 s to open (its graph is read into memory), for a recall that
# depends on the data as IVF's does.
INDEX_TYPE = "flat"
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
SERVICE_HOST = "127.0.0.1"  # loopback: another host needs --tokens (or --insecure-no-auth)
SERVICE_PORT = 8000
SERVICE_RATE_LIMIT_PER_MINUTE = 120  # requests per token (or per client without tokens); 0: no limit
SERVICE_RATE_BURST = 30  # requests a token may make at once before the per-minute rate applies
SERVICE_QUEUE_SIZE = 64  # questions and searches in flight; more are refused with 503 and Retry-After
SERVICE_MAX_BATCH = 32  # questions read in one reader pass (all their windows in shared forward passes)
SERVICE_BATCH_WAIT_MS = 5.0  # how long the reader waits after a question arrives for others to join it
SERVICE_MAX_QUESTION_CHARS = 2000
SERVICE_MAX_TOP_K = 50  # most answers, passages read, or passages listed per request
SERVICE_MAX_BODY_BYTES = 1024 * 1024  # JSON bodies
SERVICE_MAX_FILE_MB = 100.0  # each uploaded file
SERVICE_MAX_FILES_PER_UPLOAD = 50
SERVICE_RETRY_AFTER_S = 1  # what a 503 (queue full) or 429 (rate limit) tells clients to wait, at least
SERVICE_JOBS_KEPT = 500  # finished upload jobs remembered for GET /v1/jobs/{job}
SERVICE_PAGE_WIDTH = 1000  # pixels of a page image unless the request asks for another width
SERVICE_MAX_PAGE_WIDTH = 3000
# Connections (issue 24, spanqa.service.connections): slow or half-sent requests are closed, and a
# flood of them cannot take the file descriptors that files, SQLite and page work need.
SERVICE_HEADER_TIMEOUT_S = 10.0  # a request line and headers must arrive within this (else 408 and closed)
SERVICE_BODY_TIMEOUT_S = 30.0  # most seconds without a byte while a request body is arriving
SERVICE_MAX_CONNECTIONS = None  # None: the file-descriptor limit less the reserve below and twice the backlog
SERVICE_MAX_CONNECTIONS_PER_CLIENT = 128  # per client address; 0: no cap (behind a proxy all share its address)
SERVICE_FD_RESERVE = 256  # descriptors kept for uploads, SQLite, the index and page work
# Connections the kernel queues for accept(): they take descriptors before the server sees them, so
# the derived connection cap leaves room for two queues' worth.
SERVICE_LISTEN_BACKLOG = 128
SERVICE_LOG_REPEAT_WINDOW_S = 60.0  # the same log line again within this is counted, not written
SERVICE_RENDER_WORKERS = 2  # page-worker processes (page images, geometry, highlight boxes, page text)
# Page work runs in those worker processes under a budget, as parsing does: a page that needs more
# time or address space gets an error (its answers come back without boxes), never the server's memory.
# A hostile page (Form XObjects nested 8 deep, 10 wide: 2.8 KB) drove pdfium to 23.7 GB in one call.
# The time covers re-OCR of one scanned page on a slow CPU (dense pages took RapidOCR ~17 s on 2 shared
# cores, bench/README.md); the memory is the parser's (OCR reserves ~3-4 GB of address space).
SERVICE_PAGE_TIMEOUT_S = 60.0
SERVICE_PAGE_MEMORY_MB = PARSE_MEMORY_MB
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
