"""The search language: query text -> AST (``language``) -> parameterised SQL (``compile``)."""
