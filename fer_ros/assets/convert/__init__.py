"""One-off converters from the published weights to our PyTorch models.

Run only by the explicit setup step (``fer-ros models fetch``, i.e. the
``prepare_weights`` functions) and by the tests, never at run time by the nodes:
:mod:`.facenet_tf` (FaceNet's frozen TensorFlow graph, via tensorboard's protobufs) and
:mod:`.emotion_keras` (fer's Keras .hdf5, via h5py).
"""
