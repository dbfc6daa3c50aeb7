"""What happens to data: read, clean, rephrase, tokenize, mix, write. One small module per stage."""
