"""Fitting: tables checked and selected, multi-start searches, the SPT law's staged fits, and the bootstrap."""
