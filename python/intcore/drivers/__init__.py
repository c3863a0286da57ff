"""The drivers: `intcore finetune` (BERT classification) and `intcore train-lm` (GPT-style LM)."""
