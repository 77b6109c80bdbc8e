"""The seed material's Keras snippet, verbatim but for the import line.

Keras:    from keras.models import Sequential / from keras.layers import Dense
symgraph: from symgraph.nn import Sequential, Dense

Run: python examples/keras_seed.py
"""

import numpy as np

from symgraph.nn import Dense, Sequential

# a two-class toy problem: two Gaussian blobs
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(-1.5, 1, (500, 2)), rng.normal(1.5, 1, (500, 2))])
y = np.repeat([0, 1], 500)

model = Sequential()
model.add(Dense(4, input_dim=2, activation='relu'))
model.add(Dense(1, activation='sigmoid'))
model.compile(loss='binary_crossentropy', optimizer='adam', metrics=['accuracy'])
model.fit(X, y, epochs=50, verbose=0)

loss, accuracy = model.evaluate(X, y, verbose=0)
print(f"backend {model.backend}: loss {loss:.4f}, accuracy {accuracy:.3f}")
model.summary()
