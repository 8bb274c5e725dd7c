"""What every part of the worker shares and nothing in it decides: the settings, the metrics,
the Faust app and the patches it needs, the errors of the services the worker speaks to."""
