"""``enasa report``: a plan as a self-contained HTML page and PNG charts.

:mod:`.html` renders the page (its numbers come from the cost report of
:mod:`enasa_compiler.simulate.cost`, so page and ``simulate`` agree by construction);
the private modules draw the Gantt chart and the page's sections.
"""
