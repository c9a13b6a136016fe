"""biofeedback.relax: a client's guided relaxation at home (``biofeedback relax``), followable with eyes closed.

A home session is a session with another protocol and another window: the same session core as ``session``
(runner, live processor, phase machine, recorder, summary), plus a breathing pacer (``pacer``), tension feedback
that pauses when the signal cannot be trusted (``feedback``), its sound (``audio``, numpy only), an optional
resonance-breathing finder (``resonance``), sham feedback for blinded trials (``sham``), the rules a running
home session adds to the core (``engine``) and the plain-language summary with the home-session history (``summary``).
No Qt in this package: the window is ``biofeedback.ui.relax_window``.
"""
