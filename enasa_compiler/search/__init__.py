"""The NAS loop: each generation of a search is compiled, costed and scored as a group.

It drives both ends of the toolchain, the torch supernets of :mod:`enasa_compiler.models`
and the compiler, so it lives here, above both: :mod:`.loop` (strategies and the
search), :mod:`.state` (checkpoints and resume), :mod:`.group` (one group: export,
compile, score) and :mod:`.executors` (in this process, or on Ray).
"""
