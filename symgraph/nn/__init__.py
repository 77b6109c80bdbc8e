"""The Keras-style model layer: Sequential, the functional Model, layers, losses, optimizers,
callbacks.

    from symgraph.nn import Sequential, Dense
    model = Sequential()
    model.add(Dense(4, input_dim=2, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(X, y, epochs=50, verbose=0)
"""

from symgraph.nn import (
           activations,
           callbacks,
           constraints,
           initializers,
           losses,
           metrics,
           optimizers,
           regularizers,
)
from symgraph.nn.augmentation import RandomFlip, RandomTranslation
from symgraph.nn.backend import choose_backend
from symgraph.nn.convolutional import (
           AveragePooling1D,
           AveragePooling2D,
           Conv1D,
           Conv2D,
           GlobalAveragePooling1D,
           GlobalAveragePooling2D,
           GlobalMaxPooling1D,
           GlobalMaxPooling2D,
           MaxPooling1D,
           MaxPooling2D,
)
from symgraph.nn.core_layers import Identity, Lambda, Permute, RepeatVector, Rescaling, Softmax
from symgraph.nn.embedding import Embedding
from symgraph.nn.functional import Functional
from symgraph.nn.initializers import set_random_seed
from symgraph.nn.layers import (
           ELU,
           Activation,
           BatchNormalization,
           Dense,
           Dropout,
           Flatten,
           Input,
           InputLayer,
           Layer,
           LeakyReLU,
           Maxout,
           PReLU,
           ReLU,
)
from symgraph.nn.merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from symgraph.nn.models import Sequential
from symgraph.nn.normalization import LayerNormalization, UnitNormalization
from symgraph.nn.preprocessing import CategoryEncoding, Discretization, Normalization
from symgraph.nn.py_dataset import PyDataset
from symgraph.nn.recurrent import GRU, LSTM, SimpleRNN
from symgraph.nn.regularization_layers import (
           ActivityRegularization,
           AlphaDropout,
           GaussianDropout,
           GaussianNoise,
           SpatialDropout1D,
)
from symgraph.nn.reshaping import (
           Cropping1D,
           Cropping2D,
           Reshape,
           UpSampling1D,
           UpSampling2D,
           ZeroPadding1D,
           ZeroPadding2D,
)
from symgraph.nn.rnn_wrappers import Bidirectional, TimeDistributed
from symgraph.nn.saving import load_model, model_from_json
from symgraph.nn.serialization import custom_object_scope, register_serializable
from symgraph.nn.subclassed import Model
from symgraph.nn.symbolic import SymbolicTensor

__all__ = ["Activation", "ActivityRegularization", "Add", "AlphaDropout", "Average",
           "AveragePooling1D", "AveragePooling2D", "BatchNormalization", "Bidirectional",
           "CategoryEncoding", "Concatenate", "Conv1D", "Conv2D", "Cropping1D", "Cropping2D",
           "Dense", "Discretization", "Dropout", "ELU", "Embedding", "Flatten", "Functional", "GRU",
           "GaussianDropout", "GaussianNoise", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
           "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Identity", "Input", "InputLayer", "LSTM",
           "Lambda", "Layer", "LayerNormalization", "LeakyReLU", "MaxPooling1D", "MaxPooling2D",
           "Maximum", "Maxout", "Minimum", "Model", "Multiply", "Normalization", "PReLU",
           "Permute", "PyDataset", "RandomFlip", "RandomTranslation", "ReLU", "RepeatVector",
           "Rescaling", "Reshape", "Sequential", "SimpleRNN", "Softmax", "SpatialDropout1D",
           "Subtract", "SymbolicTensor", "TimeDistributed", "UnitNormalization", "UpSampling1D",
           "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D", "activations", "callbacks",
           "choose_backend", "constraints", "custom_object_scope", "initializers", "load_model",
           "losses", "metrics", "model_from_json", "optimizers", "register_serializable",
           "regularizers", "set_random_seed"]
