"""Face identity: detection with landmarks, alignment, the 128-d encoder, verification."""
