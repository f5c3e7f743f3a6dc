"""The course simulator: a lap with gates at distances, riders with speed and power along it,
boxes at places with a radio range and a clock of their own (``world``); what every meter
broadcasts, which box hears it and when by its clock, and the chips' passes (``ride``); how much of
each segment the boxes hear (``coverage``). It drives real box daemons through their ``sim``
source and answers a coach's question before a session: with boxes here and here, how much of each
segment is heard?"""
