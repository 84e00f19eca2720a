"""Flask extensions only the web process needs (CSRF, sign-in, Bootstrap), created unbound here and
initialised in create_app."""

from flask_bootstrap import Bootstrap5
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
bootstrap = Bootstrap5()
