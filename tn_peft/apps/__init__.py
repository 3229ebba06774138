"""Applications built on the library: ``finetune`` (real fine-tunes and the frontier), ``bench`` (the
benchmarks) and ``fuzz`` (random inputs on every input surface). The library never imports them (a
test holds it to that); the command line runs them.
"""
