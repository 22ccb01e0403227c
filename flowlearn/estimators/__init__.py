"""scikit-learn estimators with neural networks inside: drop them into Pipeline, GridSearchCV, cross_val_score.

All train through flowlearn's one training loop and pass scikit-learn's estimator checks.
"""
from .autoencoder import AutoEncoder
from .cnn import CNNClassifier
from .dnn import DNNClassifier, DNNRegressor
from .linear import LinearClassifier, LinearRegressor

__all__ = ["LinearRegressor", "LinearClassifier", "DNNClassifier", "DNNRegressor", "AutoEncoder", "CNNClassifier"]
