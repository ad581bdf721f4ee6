"""How a person proves who they are: local users now, upstream identity providers later."""
