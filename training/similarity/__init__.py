"""Learning the similarity function: triplet loss and mining, encoders, binary heads, evaluation.

Modules: ``triplet`` (loss and online triplet selectors), ``batches`` (P x K sampler),
``augment``, ``data`` (LFW training split and the chip/feature cache), ``scratch_encoder``,
``training`` (the loop), ``finetuned`` (the fine-tuned last layer), ``evaluation`` (ROC, AUC,
TAR at FAR) and ``commands`` (the CLI's ``facestream similarity ...``). What the runtime loads
stays in ``shared.similarity``: ``heads`` (``HeadVerifier``, a
``shared.face.verification.Verifier``) and ``weights`` (the committed weights format).
"""
