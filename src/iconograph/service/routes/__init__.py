"""The service's endpoints, one router per area; :func:`iconograph.service.app.create_app` includes them."""
