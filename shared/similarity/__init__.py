"""The learned similarity the runtime can verify with: binary heads over encodings.

``heads`` (Siamese binary-classification heads and ``HeadVerifier``, a
``shared.face.verification.Verifier``) and ``weights`` (the committed weights format). Training
them lives in ``training.similarity`` (``facestream similarity ...``).
"""
