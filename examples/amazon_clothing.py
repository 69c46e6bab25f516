r"""Amazon Clothing (MMRec split): BR-MRS and the baselines with the package's
recommended settings, written as a paper-style results table.

    python examples/amazon_clothing.py --root data/clothing   # all seven models
    python examples/amazon_clothing.py --root data/clothing \
        --models brmrs,lightgcn --seeds 999 1000 1001 --out results/clothing

Data: an MMRec dataset folder with ``clothing.inter``, ``image_feat.npy``
(4096-d) and ``text_feat.npy`` (384-d). The features are not in this
repository; download the ``clothing`` folder of MMRec's preprocessed data
(https://drive.google.com/drive/folders/13cBy1EA_saTUuXxVllKgtfci2A09jyaG).
Without it the script says what is missing and exits with code 2.

Protocol (MMRec, :class:`pyg_brmrs.training.TrainConfig` defaults): Adam,
lr 1e-3, batch 2048, embedding 64, at most 1000 epochs, early stopping on
validation Recall@20 with patience 20, test metrics at the best validation
epoch, full ranking over all items. GPU when available (``--device``).

Recommended settings for Clothing
(``pyg_brmrs.app.recipes.DATASET_DEFAULTS['clothing']``, taken from REARM's
published command for Clothing; the baselines keep their recipe defaults):

* graphs (BR-MRS and the REARM objective): k_item=10, k_user=45,
  alpha_item=0.1, alpha_user=0.7, modality_weights_item={'image': 0.1,
  'text': 0.9}, modality_weights_user={'image': 0.1, 'text': 0.9}
* backbone: num_layers=4, num_item_layers=1, num_user_layers=1
* REARM objective only: cl_weight=1e-06, orth_weight=1e-05, temperature=0.03

These values come from REARM and have not been re-tuned for BR-MRS on
Clothing (the image/text features are not available on the development
machines); ``pyg-brmrs grid --preset clothing --grid ...`` tunes them on
validation.
"""
import sys
from typing import Optional, Sequence

import _amazon


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _amazon.main('clothing', argv, description=__doc__)


if __name__ == '__main__':
    sys.exit(main())
