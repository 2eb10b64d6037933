"""MAIN command macros (``.cmds``): lexing (:mod:`.lexer`), the selection language
(:mod:`.selection`) and the interpreter (:mod:`.interpreter`) that turns each sentence into a
call of :class:`kickref.session.Session`."""
