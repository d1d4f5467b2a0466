"""Training, calibration, data synthesis and research figures: what makes the shipped files.

Apart from the runtime library (``shared/``) and the services (``services/``) on purpose: a
service imports only what it runs with, so an image, a deployment or an import of
``shared.face`` never pulls in dataset readers, attack synthesis or training loops, and a
change here cannot break a running service. The one way in is the ``facestream`` command
(``facestream similarity ...``, ``facestream liveness-model ...``, ``facestream style-train``,
``facestream layers``, ``facestream models ...``, ``facestream calibrate``), whose training
commands import this package only when they run. Training may import the runtime (it trains
the runtime's models); the runtime never imports training (``tests/test_layout.py``).
"""
