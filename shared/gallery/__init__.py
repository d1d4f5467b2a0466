"""The gallery of enrolled people: their encodings and enrollment images, in Redis or in files."""
