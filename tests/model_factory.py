"""Builds a tiny random-weight DistilBERT QA model and its WordPiece tokenizer, saved like a hub model.

`python tests/model_factory.py` trains the tokenizer's vocabulary again into tests/fixtures.

Tests need a real tokenizer and model that load through `AutoTokenizer` and
`AutoModelForQuestionAnswering.from_pretrained(directory)` without network. The weights are
random (seeded), so answers are arbitrary but the whole load/tokenise/forward/decode path is real.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_SIZE = 1200

# A small English corpus: enough distinct words that common test passages tokenise mostly into whole
# words, and enough rare ones that some words split into ##pieces (word alignment is exercised).
CORPUS = """
The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.
It is named after the engineer Gustave Eiffel, whose company designed and built the tower.
The tower was constructed from 1887 to 1889 as the entrance to the 1889 World's Fair.
The Amazon River in South America is the largest river by discharge volume of water in the world.
The river flows through Brazil, Peru and Colombia before it reaches the Atlantic Ocean.
Marie Curie was a Polish and naturalised-French physicist and chemist.
She conducted pioneering research on radioactivity.
She was the first woman to win a Nobel Prize and the only person to win Nobel Prizes in two scientific fields.
Python is a popular programming language created by Guido van Rossum and first released in 1991.
The language emphasises code readability with the use of significant indentation.
Mount Everest is Earth's highest mountain above sea level, located in the Himalayas between Nepal and China.
The first people to reach the summit were Tenzing Norgay and Edmund Hillary in 1953.
The Great Wall of China is a series of fortifications built across the historical northern borders
of ancient Chinese states.
Photosynthesis is the process used by plants, algae and bacteria to convert light energy into chemical energy.
The cat sat on the mat while the dog slept near the warm fire in the small house.
A library holds books, maps, newspapers and journals that readers may borrow for several weeks.
The meeting starts at nine o'clock on Monday morning in the large room on the second floor.
Who wrote the report? When was the bridge opened? Where is the museum? What is the capital of Italy?
Rome is the capital of Italy and Berlin is the capital of Germany, while Madrid is the capital of Spain.
The company reported revenue of 12 million dollars in 2020 and hired forty new engineers.
Scientists measured the temperature, pressure and humidity every hour during the long experiment.
""".strip()


VOCAB_FILE = Path(__file__).resolve().parent / "fixtures" / "tiny_wordpiece_vocab.txt"


def train_wordpiece_vocab() -> list[str]:
    """A WordPiece vocabulary trained on CORPUS, tokens in id order. The trainer breaks ties between
    equally frequent pairs in a hash order that changes from run to run (the vocabulary came out 705
    to 707 tokens, with different ids), so the tests read the one saved in VOCAB_FILE, made by this
    function: `python tests/model_factory.py` writes it again."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # Cased like distilbert-base-cased-distilled-squad: the answer text keeps its capitals.
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS)
    wordpiece.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    return [token for token, _ in sorted(wordpiece.get_vocab().items(), key=lambda item: item[1])]


def build_tiny_qa_model(directory: Path) -> Path:
    """The WordPiece tokenizer of VOCAB_FILE and a seeded 2-layer DistilBERT QA model, saved like a
    hub model: the same files in every run.

    Returns `directory`, which `AutoTokenizer.from_pretrained` and
    `AutoModelForQuestionAnswering.from_pretrained` then load offline.
    """
    import torch
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering, DistilBertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = VOCAB_FILE.read_text(encoding="utf-8").split("\n")[:-1]
    vocab = {token: number for number, token in enumerate(tokens)}

    # DistilBertTokenizer (the fast, tokenizers-backed class in transformers 5) rebuilds the
    # normaliser/pre-tokeniser around the vocabulary and adds the [CLS] A [SEP] B [SEP] template, so
    # the saved files are exactly what a hub DistilBERT ships.
    tokenizer = DistilBertTokenizer(vocab=vocab, do_lower_case=False, strip_accents=False)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(directory)

    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = DistilBertForQuestionAnswering(config)
    model.save_pretrained(directory)
    return directory


# seeded_qa_model: the random weights of the parity test. The reference outputs come from another
# transformers version (4.x, run once, elsewhere), whose own init scheme and RNG consumption differ
# from 5.x, so every weight is drawn here from one generator in a fixed (sorted-name) order instead.
SEEDED_EMBEDDING_STD = 1.0  # word and position embeddings equally strong: repeated words still differ by position
SEEDED_BIAS_STD = 0.02
# Start/end logits then spread with a std of about 2 over a passage (measured): the best span of
# a window leads the next by far more than the 1e-6 that separates two forward-pass
# implementations (emulating the pipeline in float32 on these logits reproduced all 1,048
# reference answers). Kept moderate on purpose: with a near one-hot head (std 0.9) every decoding
# rule picks the same span, and the parity test would no longer tell decodings apart.
SEEDED_QA_HEAD_STD = 0.15
QA_HEAD_PREFIX = "qa_outputs."


def _seeded_std(name: str, shape: tuple[int, ...]) -> float | None:
    """The std of the normal draw for state-dict entry `name`; None: layer norm (weight 1, bias 0)."""
    lowered = name.lower()
    if "layernorm" in lowered or "layer_norm" in lowered:
        return None
    if name.startswith(QA_HEAD_PREFIX) and len(shape) >= 2:
        return SEEDED_QA_HEAD_STD
    if len(shape) < 2:
        return SEEDED_BIAS_STD
    if "embeddings" in lowered:
        return SEEDED_EMBEDDING_STD
    # 1/sqrt(fan_in) keeps activations O(1) through the layers, so attention mixes context
    # instead of collapsing to uniform weights or exploding.
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    return fan_in**-0.5


def _skipped_weight_init() -> AbstractContextManager[None]:
    """transformers' `no_init_weights` where this version has it (4.x and 5.x keep it in different modules).

    Every state-dict entry is overwritten afterwards, so the version's own init (seconds for a
    29k x 768 embedding in 5.x) is wasted work; buffers outside the state dict (DistilBERT's
    integer position ids) are set in the modules' __init__, which still runs.
    """
    from contextlib import nullcontext

    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return nullcontext()
    return no_init_weights()


def seeded_qa_model(arch_dir: Path, seed: int) -> PreTrainedModel:
    """`AutoModelForQuestionAnswering.from_config(arch_dir)` with every weight drawn from `seed`, in eval mode.

    Bit-identical under every transformers version that names the state-dict entries the same
    (checked for 4.57 and 5.x with `weights_checksum`): the version's own initialisation is
    overwritten entry by entry, in sorted-name order, from one `torch.Generator`. Layer norms get
    weight 1 and bias 0; the QA head gets a larger std than a trained model's init so start/end
    logits are well spread (see SEEDED_QA_HEAD_STD). Only torch and transformers are imported, so
    a reference script running in another environment can import this module.
    """
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = AutoConfig.from_pretrained(str(arch_dir))
    with _skipped_weight_init():
        model = AutoModelForQuestionAnswering.from_config(config)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    state = model.state_dict()  # tensors share storage with the parameters
    with torch.no_grad():
        for name in sorted(state):
            tensor = state[name]
            if not tensor.is_floating_point():
                continue  # integer buffers (position ids) are not weights
            std = _seeded_std(name, tuple(tensor.shape))
            if std is None:
                tensor.fill_(1.0 if name.endswith("weight") else 0.0)
                continue
            drawn = torch.randn(tuple(tensor.shape), generator=generator, dtype=torch.float32)
            tensor.copy_(drawn * std)
    model.eval()
    return model


def weights_checksum(model: torch.nn.Module) -> str:
    """sha256 over every state-dict entry's name, dtype, shape and bytes, in sorted-name order."""
    import hashlib

    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


if __name__ == "__main__":
    VOCAB_FILE.write_text("".join(token + "\n" for token in train_wordpiece_vocab()), encoding="utf-8")
    print(f"wrote {VOCAB_FILE}")


def build_tiny_cross_encoder(directory: Path, seed: int = 0) -> Path:
    """A seeded 2-layer BERT cross-encoder (one relevance logit per (question, passage) pair) with the
    WordPiece tokenizer of VOCAB_FILE, saved like a hub reranker: it loads through
    `AutoModelForSequenceClassification.from_pretrained(directory)` offline. Its weights are drawn
    ten times wider than BERT's own init, so that pairs get clearly different (arbitrary) logits:
    at BERT's init every pair scores nearly alike."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = VOCAB_FILE.read_text(encoding="utf-8").split("\n")[:-1]
    vocab = {token: number for number, token in enumerate(tokens)}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=False, strip_accents=False)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(directory)

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=1, pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory
