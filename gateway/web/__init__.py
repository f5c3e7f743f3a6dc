"""The coach's page: a Flask app under a production WSGI server, in the daemon's process."""
