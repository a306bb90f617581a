"""Operating workflows: listing, describing, exporting, retrying, forking and replaying them.

Built on the store's :class:`~dramatiq_encore.state.operations.Operations`; ``Encore``'s
methods, the ``encore`` CLI and the dashboard all call these functions.
"""
