"""The web console: ``/admin`` for administrators and ``/account`` for every signed-in person.

Server-rendered pages (Jinja2) on the authorization server's listener, with no script at all:

- :mod:`.guard`: who is at the browser (their session), who is an administrator, the CSRF and
  same-origin checks of every form, a fresh sign-in for what removes, revokes, rotates or
  disables, and the audit context that names the administrator in every record.
- :mod:`.render`: the layout, the strict headers, the notices shown after an action.
- :mod:`.signin`: the console's own sign-in (the same password check, throttle and audit as an
  application's sign-in).
- a module per page (:mod:`.overview`, :mod:`.clients`, :mod:`.people`, :mod:`.access_pages`,
  :mod:`.grants`, :mod:`.keys`, :mod:`.registry_pages`, :mod:`.audit_pages`, :mod:`.account`),
  each with its ``ROUTES``; :mod:`.routes` gathers them.
"""
