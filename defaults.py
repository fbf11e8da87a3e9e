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

# Reader decoding: the settings of the classic transformers question-answering pipeline.
MAX_ANSWER_LENGTH = 15  # tokens
MAX_SEQ_LENGTH = 384  # tokens per (question, passage window) pair
DOC_STRIDE = 128  # tokens shared by consecutive windows of one long passage
MAX_QUESTION_LENGTH = 64  # tokens; longer questions are cut so a passage always fits beside them
READER_BATCH_SIZE = 16  # windows per forward pass
CONTEXT_CHARS = 150  # characters of context kept on each side of an answer
SCORE_THRESHOLD = None  # answers scoring below it are dropped ("no answer"); None keeps all

# Indexing.
CHUNK_WORDS = 200  # words per chunk (about 260 reader tokens: a question plus a chunk fit one window)
CHUNK_OVERLAP_WORDS = 40  # words shared by consecutive chunks of a page, so no answer is cut in two
EMBEDDER_BATCH_SIZE = 32
SUPPORTED_SUFFIXES = (".pdf", ".txt", ".md", ".markdown", ".html", ".htm")
