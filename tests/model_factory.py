"""Builds a tiny random-weight DistilBERT QA model and its WordPiece tokenizer, saved like a hub model.

Tests need a real tokenizer and model that load through `AutoTokenizer` and
`AutoModelForQuestionAnswering.from_pretrained(directory)` without network. The weights are
random (seeded), so answers are arbitrary but the whole load/tokenise/forward/decode path is real.
"""

from __future__ import annotations

from pathlib import Path

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


def build_tiny_qa_model(directory: Path) -> Path:
    """Train a WordPiece tokenizer on CORPUS, build a seeded 2-layer DistilBERT QA model, save both.

    Returns `directory`, which `AutoTokenizer.from_pretrained` and
    `AutoModelForQuestionAnswering.from_pretrained` then load offline.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering, DistilBertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # Cased like distilbert-base-cased-distilled-squad: the answer text keeps its capitals.
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS)
    wordpiece.train_from_iterator(CORPUS.splitlines(), trainer=trainer)

    # DistilBertTokenizer (the fast, tokenizers-backed class in transformers 5) rebuilds the same
    # normaliser/pre-tokeniser around the trained vocabulary and adds the [CLS] A [SEP] B [SEP]
    # template, so the saved files are exactly what a hub DistilBERT ships.
    tokenizer = DistilBertTokenizer(vocab=wordpiece.get_vocab(), do_lower_case=False, strip_accents=False)
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
