"""The ALIT architecture: recurrent encoder, quantiser, decoder, halting (no losses here)."""
